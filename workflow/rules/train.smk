# train stage: rules owned by the train stage (filled in by its issue).
