"""HTML and Markdown reports: the training/evaluation report and the strategy review page."""
