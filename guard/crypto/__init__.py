"""The only package that touches ``cryptography.hazmat``.

Everything else calls the functions exported by its modules (field encryption and
keyed hashing for PII, checkpoint signatures for audit). Keys are rings: new data
uses the primary key, old data stays readable with any key in the ring.
"""
