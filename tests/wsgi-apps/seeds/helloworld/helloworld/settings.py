"""The smallest settings the seed's Django project needs: no database, no
admin, one view (the project `django-admin startproject helloworld` makes,
cut down to what serving /hello uses)."""

SECRET_KEY = 'seed-app-not-secret'
DEBUG = False
ALLOWED_HOSTS = ['*']
ROOT_URLCONF = 'helloworld.urls'
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
WSGI_APPLICATION = 'helloworld.wsgi.application'
