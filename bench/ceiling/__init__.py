"""The framework ceiling: a bare Flask app answering /healthz, served by the same
gunicorn.conf.py as the services (gevent workers, BufferedApp slots), no hooks, no database."""
