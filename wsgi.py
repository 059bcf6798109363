"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from chatbot import create_app

app = create_app()
