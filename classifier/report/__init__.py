"""Reports: the analyst's terminal summary and machine formats (jsonl, json, csv)."""
