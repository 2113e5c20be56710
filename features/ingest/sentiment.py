"""Headline sentiment: VADER's lexicon compound score, computed locally (the lexicon ships in the wheel)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = ["SENTIMENT_MODEL", "headline_sentiment"]

# Stored next to every score so that a change of scorer is visible in the data.
SENTIMENT_MODEL = "vader-3.3.2"


@cache
def _analyzer() -> SentimentIntensityAnalyzer:
    # Reading the lexicon costs ~0.1 s: done once, on first use, never at import.
    return SentimentIntensityAnalyzer()


def headline_sentiment(texts: Sequence[str]) -> np.ndarray:
    """VADER compound score of each text, in [-1, 1] (negative = bearish wording), as float64."""
    analyzer = _analyzer()
    return np.fromiter(
        (analyzer.polarity_scores(text)["compound"] for text in texts),
        dtype="float64",
        count=len(texts),
    )
