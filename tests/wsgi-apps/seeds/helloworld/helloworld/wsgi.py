"""WSGI config for helloworld: the module-level `application` servers use."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'helloworld.settings')

application = get_wsgi_application()
