"""gengate: a self-hostable gateway for asynchronous AI-generation jobs."""

__version__ = "0.1.0"
