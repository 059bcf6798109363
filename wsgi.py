"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from chatbot import assets, create_app

app = create_app()
assets.warm(app)  # static files minified, versioned and compressed before the first visitor
