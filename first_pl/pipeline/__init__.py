"""The end-to-end experiment (`first-pl pipeline`) and the config-hash stage cache it runs on."""
