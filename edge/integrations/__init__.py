"""What the device tells other systems about itself, beyond its own MQTT contract: Home
Assistant's MQTT discovery (homeassistant.py). Modules here build payloads from the config and
publish them through the device's one MqttLink (edge/mqtt.py); they import edge's config and
MQTT link, nothing from api/."""
