"""Sample apps deployed in the guide: the shop (monolith and microservices) and httpbin."""
