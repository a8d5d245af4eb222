"""What a run leaves on disk: the run folder, summary.csv, plots and sample images."""
