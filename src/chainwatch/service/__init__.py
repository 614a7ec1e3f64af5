"""The service layer around the pure core: collect, record, one alert cycle, scheduling."""
