"""Parts of routerhub.settings by concern; Django reads them through routerhub/settings.py."""
