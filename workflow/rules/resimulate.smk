# resimulate stage: rules owned by the resimulate stage (filled in by its issue).
