"""Scoring that training and the dashboard both use: ROUGE as this project computes it (rouge.py, and the same
protocol as an `evaluate` module in dialogsum_rouge/), the failure lenses (lenses.py) and the statistics (stats.py:
bootstrap intervals, paired tests, rank probabilities). It imports neither training/ nor dashboard/."""
