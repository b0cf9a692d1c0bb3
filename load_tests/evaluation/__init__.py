"""The detection-quality evaluation behind ``load_tests/eval_detection.py``.

``tables`` (real data shipped in scikit-learn and statsmodels), ``streams`` (resampled events
with injected changes, baselines), ``real`` (the scenarios and their limits), ``runs`` (the
in-memory pipeline), ``scoring`` (alerts read as CloudEvents, judged against the changes),
``theory`` (minimum detectable sizes at the false-discovery level), ``power`` (the power
table), ``generated`` (the synthetic streams), ``report`` (targets and tables).
"""
