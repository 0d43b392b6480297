"""A small demo storefront that uses the browser SDK exactly as the README tells a site to."""
