"""Offline measurement of categorisation quality: a date-ordered replay of labelled expense files.

`python -m evaluation.replay` (`make evaluate`) predicts each expense from the past only, then
learns it, and writes docs/quality.md, its charts and a JSON record of every figure.
"""
