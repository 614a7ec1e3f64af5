"""Pure analysis: path building, profile verdicts, forecasts and findings. No I/O."""
