"""The Python API: one library call per module, ``Request -> Result`` dataclasses.

Progress and notices travel through callbacks; nothing here prints. See docs/python-api.md.
"""
