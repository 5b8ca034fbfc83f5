import * as shared from "/common/lang.js";

// The zone editor's words in English and Chinese (zh-CN). The site's language (alerts.language)
// is the default; the switch in the header overrides it for this browser (the same choice as
// the dashboard's and /debug's, one key in localStorage).

export const TEXT = {
  en: {
    title: "Zone editor",
    camera: "Camera",
    newZone: "New zone",
    newMask: "New ignore mask",
    deletePoint: "Delete point",
    save: "Save",
    reload: "Reload",
    logout: "Log out",
    zones: "Zones",
    masks: "Ignore masks",
    id: "Id",
    name: "Name",
    role: "Role",
    priority: "Priority",
    reason: "Reason",
    points: (n) => `${n} points`,
    remove: "Delete",
    removeZone: "Delete zone",
    removeMask: "Delete mask",
    now: "Now",
    people: (n) => `${n} people`,
    unknown: "unknown",
    unsaved: "not saved yet",
    loading: "Loading…",
    help: "Pick a zone or mask in the list (or click its outline), then click on the picture to " +
      "add points (once it has three, a click adds one into the nearest side); drag a point to " +
      "move it; right-click a point (or select it and press Delete point) to remove it. " +
      "Coordinates are kept as fractions of the frame.",
    drawing: (id) => `Adding points to ${id}: click on the picture.`,
    nothingSelected: "Nothing selected: pick a zone or a mask to draw on it.",
    dirty: "Unsaved changes",
    clean: "No changes",
    saving: "Saving…",
    saved: "Saved; the service takes it up in a few seconds.",
    invalid: "Not saved: the config's checks refused it (see the marked fields).",
    conflict: "Not saved: someone else saved this site's config since you opened it.",
    reloadTheirs: "Load their version (your changes here are dropped)",
    failed: "Could not",
    leave: "You have unsaved changes. Drop them?",
    snapshotsOff: "No picture: snapshots are off on this device. To draw on the camera's " +
      "picture, set api.snapshots.enabled: true in the config and restart the service. Until " +
      "then the grey frame has the camera's shape (as last seen here; 16:9 if never).",
    noPicture: (why) => `No picture (${why}): drawing on a grey frame of the camera's shape.`,
    forbidden: "Only admins may edit the zones.",
    noCameras: "No cameras are configured.",
    roles: {
      waiting: "waiting", queue: "queue", service: "service", entrance: "entrance",
      self_service: "self-service", staff: "staff",
    },
    roleNames: { viewer: "viewer", manager: "manager", admin: "admin" },
    who: (id, role) => `${id} (${role})`,
  },
  "zh-CN": {
    title: "区域编辑",
    camera: "摄像头",
    newZone: "新建区域",
    newMask: "新建忽略区域",
    deletePoint: "删除点",
    save: "保存",
    reload: "重新加载",
    logout: "退出",
    zones: "区域",
    masks: "忽略区域",
    id: "编号",
    name: "名称",
    role: "用途",
    priority: "优先级",
    reason: "原因",
    points: (n) => `${n} 个点`,
    remove: "删除",
    removeZone: "删除区域",
    removeMask: "删除忽略区域",
    now: "当前",
    people: (n) => `${n} 人`,
    unknown: "未知",
    unsaved: "尚未保存",
    loading: "加载中…",
    help: "在列表中选择一个区域或忽略区域（或点击其轮廓），然后在画面上点击添加点（已有三个点后，" +
      "点击会在最近的边上插入一个点）；拖动点可移动；" +
      "右键点击一个点（或选中后按“删除点”）可删除。坐标按画面比例（0–1）保存。",
    drawing: (id) => `正在为 ${id} 添加点：请在画面上点击。`,
    nothingSelected: "未选择：请选择一个区域或忽略区域后在画面上绘制。",
    dirty: "有未保存的修改",
    clean: "无修改",
    saving: "保存中…",
    saved: "已保存；服务将在几秒内采用。",
    invalid: "未保存：配置检查未通过（见标出的字段）。",
    conflict: "未保存：在您打开之后，有人已保存了本站点的配置。",
    reloadTheirs: "加载对方的版本（放弃此处的修改）",
    failed: "无法",
    leave: "有未保存的修改，确定放弃吗？",
    snapshotsOff: "无画面：此设备未开启快照。如需在摄像头画面上绘制，请在配置中设置 " +
      "api.snapshots.enabled: true 并重启服务。在此之前，灰色画面按摄像头的比例显示（按此浏览器上次所见；" +
      "从未见过则为 16:9）。",
    noPicture: (why) => `无画面（${why}）：在摄像头比例的灰色画面上绘制。`,
    forbidden: "只有管理员可以编辑区域。",
    noCameras: "没有配置摄像头。",
    roles: {
      waiting: "等候", queue: "排队", service: "服务", entrance: "入口",
      self_service: "自助", staff: "员工",
    },
    roleNames: { viewer: "查看者", manager: "主管", admin: "管理员" },
    who: (id, role) => `${id}（${role}）`,
  },
};

/** The roles a zone may have: edge/config.py's ZoneRole, in its order. */
export const ROLES = ["waiting", "queue", "service", "entrance", "self_service", "staff"];

export const language = (siteLanguage) => shared.language(TEXT, siteLanguage);
export const choose = shared.choose;
export const applyStatic = (lang) => shared.applyStatic(TEXT, lang);
