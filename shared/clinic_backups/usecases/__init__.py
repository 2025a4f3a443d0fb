"""What a clinic and the operator can do: back up, list, download, delete, restore,
re-encrypt, schedule, sweep, replicate. Imports the domain only.
"""
