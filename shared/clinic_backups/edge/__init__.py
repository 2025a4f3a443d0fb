"""Where the outside comes in: the HTTP resolver and its one error map, token auth, queue
jobs, the API's response shapes, the operator CLI.
"""
