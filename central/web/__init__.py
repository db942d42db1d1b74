"""The operator page: files shipped in this package (``static/``), served by central at ``/``.

    settings   the page's options from central's config ([web] tile_url) and the origins they allow
    assets     the files of ``static/``, read once, with their type, digest and gzip form
    routes     GET / and GET /static/...: caching and a strict Content-Security-Policy

The page needs no internet: its libraries are vendored (``static/vendor``, see ``vendor.sh``), and by
default the map draws the cabinets on a plain background. It talks only to central's own API, with
the operator's token in a header (kept in the browser's sessionStorage, never in a URL).
"""
