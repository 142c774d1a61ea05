"""Jinja2 templates, CSS and JavaScript of the tamx HTML report (shipped as package data)."""
