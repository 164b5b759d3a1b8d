"""The agent daemon (`obstop agent`): its MQTT loop and command handling (agent.py), its command journal
(journal.py) and its config (config.py). Only the CLI imports this package; the controller never does."""
