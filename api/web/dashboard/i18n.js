import * as shared from "/common/lang.js";

// The dashboard's words in English and Chinese (zh-CN). The site's language (alerts.language)
// is the default; the switch in the header overrides it for this browser.

export const TEXT = {
  en: {
    zone: "Zone", logout: "Log out", now: "Now", cameras: "Cameras",
    todayTitle: "Today against a usual day", today: "Today", usual: "Usual",
    usualFor: (weekday, weeks) => `Usual ${weekday} (median of the last ${weeks})`,
    csvToday: "CSV: today", csvUsual: "CSV: usual day", csv: "CSV",
    historyTitle: "History", b1m: "1 minute (last hour)", b15m: "15 minutes (last day)",
    b1h: "1 hour (last week)", b1d: "1 day (last 30 days)",
    busiestTitle: "Busiest hours (last 30 days, mean people)",
    alertsTitle: "Alerts (last 30 days)", raised: "Raised", rule: "Rule", status: "Status",
    toAck: "Time to accept", by: "By", effect: "Effect",
    passesTitle: "Passes (last 7 days): the lobby before and after",
    asked: "Asked", doneBy: "Done by", before: "Before", after: "After", change: "Change",
    waitChange: "Wait change",
    unknown: "unknown", people: "people", notSeen: "not seen",
    camera: { online: "online", stale: "stale", offline: "offline", unknown: "unknown" },
    alertStatus: { open: "open", acknowledged: "accepted", pass_done: "pass done", cleared: "cleared" },
    roles: { waiting: "waiting", queue: "queue", service: "service", entrance: "entrance", other: "other" },
    weekdays: ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    weekdaysShort: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    summary: (n, acked, median) => `${n} alerts, ${acked} accepted` +
      (median === null ? "" : `; median time to accept ${median}`),
    fewer: (n) => `${n} fewer`, more: (n) => `${n} more`,
    noData: "nothing recorded", noAlerts: "no alerts", noPasses: "no passes",
    loggedOut: "Logged out", failed: "Could not load",
    roleNames: { viewer: "viewer", manager: "manager", admin: "admin" },
    who: (id, role) => `${id} (${role})`,
  },
  "zh-CN": {
    zone: "区域", logout: "退出", now: "当前", cameras: "摄像头",
    todayTitle: "今天与平常对比", today: "今天", usual: "平常",
    usualFor: (weekday, weeks) => `平常的${weekday}（最近 ${weeks} 周的中位数）`,
    csvToday: "CSV：今天", csvUsual: "CSV：平常", csv: "CSV",
    historyTitle: "历史", b1m: "1 分钟（最近 1 小时）", b15m: "15 分钟（最近 1 天）",
    b1h: "1 小时（最近 1 周）", b1d: "1 天（最近 30 天）",
    busiestTitle: "最忙时段（最近 30 天，平均人数）",
    alertsTitle: "告警（最近 30 天）", raised: "发出时间", rule: "规则", status: "状态",
    toAck: "接单用时", by: "处理人", effect: "效果",
    passesTitle: "分流（最近 7 天）：之前与之后",
    asked: "请求时间", doneBy: "完成人", before: "之前", after: "之后", change: "变化",
    waitChange: "等待变化",
    unknown: "未知", people: "人", notSeen: "未见",
    camera: { online: "在线", stale: "数据过期", offline: "离线", unknown: "未知" },
    alertStatus: { open: "未处理", acknowledged: "已接单", pass_done: "已分流", cleared: "已解除" },
    roles: { waiting: "等候", queue: "排队", service: "服务", entrance: "入口", other: "其他" },
    weekdays: ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"],
    weekdaysShort: ["一", "二", "三", "四", "五", "六", "日"],
    summary: (n, acked, median) => `共 ${n} 条告警，已接单 ${acked} 条` +
      (median === null ? "" : `；接单用时中位数 ${median}`),
    fewer: (n) => `少 ${n} 人`, more: (n) => `多 ${n} 人`,
    noData: "无记录", noAlerts: "无告警", noPasses: "无分流",
    loggedOut: "已退出", failed: "无法加载",
    roleNames: { viewer: "查看者", manager: "主管", admin: "管理员" },
    who: (id, role) => `${id}（${role}）`,
  },
};

export const language = (siteLanguage) => shared.language(TEXT, siteLanguage);
export const choose = shared.choose;
export const applyStatic = (lang) => shared.applyStatic(TEXT, lang);
