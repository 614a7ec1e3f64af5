"""Coverage-guided fuzzing of chainwatch's parsers of untrusted bytes (atheris).

``harnesses.py`` holds one function per parser; ``run.py`` runs one under atheris
(``make fuzz``); ``corpus/<harness>/`` holds the seeds and every input that once
crashed a harness; ``crashes/<harness>/`` the reproducers of crashes not fixed yet.
"""
