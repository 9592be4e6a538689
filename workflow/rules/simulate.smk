# simulate stage: rules owned by the simulate stage (filled in by its issue).
