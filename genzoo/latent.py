"""`python -m genzoo.latent <run dir>`: a finished run's latent pictures and editing metrics, drawn again.

The implementation lives in genzoo/evaluation/latent.py (pictures) and
genzoo/evaluation/editing.py (editing measured); see their docstrings.
"""

from genzoo.evaluation.latent import main

if __name__ == "__main__":
    main()
