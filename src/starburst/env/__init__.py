"""Environment sync: the worker image of the local environment, built without Docker.

``capture`` reads the environment, ``fingerprint`` names it, ``wheels`` installs its Linux
wheels, ``layers`` packs reproducible layers, ``registry`` speaks the OCI distribution API,
``build`` puts it together (``ensure_image``), ``prune`` removes old images.
"""
