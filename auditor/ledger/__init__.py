"""Reading the deployment: LiteLLM's tables, what this database has, the queries, database and Redis connections."""
