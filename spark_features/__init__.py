"""PySpark jobs that turn one edge's raw logs into validated features and training examples."""
