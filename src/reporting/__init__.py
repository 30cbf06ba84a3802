"""What the report and the seed table compute from the evaluated results: report.md and its
figures (comparison), reports/seeds.md (seed_table)."""
