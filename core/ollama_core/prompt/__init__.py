"""Prompt construction and output parsing: Go templates, Jinja chat templates, the default parser."""
