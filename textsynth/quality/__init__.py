"""Quality stages: each one marks records rejected with a reason; none deletes a record."""
