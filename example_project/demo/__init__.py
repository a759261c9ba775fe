"""The README's demo, ``python3 run.py demo`` (``manage.py fairque_demo``): a noisy organisation of
the example shop floods the queue while light ones still get served at once."""
