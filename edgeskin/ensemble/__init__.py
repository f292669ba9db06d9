"""`edgeskin ensemble` and `edgeskin chain`: finished runs averaged into one model, and generations
of runs distilled from the ensemble before them. Above `evaluate`, since each ensemble is scored on
validation as it is built."""
