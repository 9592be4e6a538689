# preprocess stage: rules owned by the preprocess stage (filled in by its issue).
