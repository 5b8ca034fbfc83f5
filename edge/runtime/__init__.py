"""The running device: what keeps it going and what it says about itself.

Owns the device state file (what only the running service knows, for the API, doctor and MQTT
in other processes). The service, its workers, child processes, the watchdog and the board
move here as they are worked on (see shared/design/house-style.md). May import the core and
the store, never api/.
"""
