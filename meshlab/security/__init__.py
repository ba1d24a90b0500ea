"""Security: workload identity and certificates (istio-agent), mutual TLS policy
(PeerAuthentication), request authentication (JWT) and authorization (AuthorizationPolicy)."""
