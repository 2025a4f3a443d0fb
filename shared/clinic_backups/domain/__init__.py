"""What a backup is: records, errors (codes and messages), names, ports, retention,
schedules, scoped storage keys. Imports nothing of ours but observability.
"""
