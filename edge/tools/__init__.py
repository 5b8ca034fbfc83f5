"""Tools around the runtime: checks run before it starts (preflight).

The doctor, replay and the CLI belong here too as they are moved (docs/house-style layout).
May import every other package of edge/ and models/; nothing in the runtime imports tools/.
"""
