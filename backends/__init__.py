"""Loop backends for backstage beyond the built-in selectors loop.

Each module defines one ``backstage.Loop`` implementation and is imported only
when an engine asks for it by name (``backstage.BACKENDS`` maps the names).
"""
