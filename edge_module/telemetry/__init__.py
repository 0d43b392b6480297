"""What the edge records and ships: the decision log, its spool, the shipper and the fleet status
reports.
"""
