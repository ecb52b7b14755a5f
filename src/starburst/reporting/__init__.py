"""A run's report: ``starburst.report(session_id, "run.html")`` or ``starburst report``.

``record.py`` reads what the store holds of a session into plain data; ``series.py`` derives
what is drawn; ``html.py`` (Bokeh) makes the self-contained page and ``png.py`` (matplotlib)
the picture. Both libraries are the optional extra ``starburst[report]``, imported only when
a page or picture is made.
"""
