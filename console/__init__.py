"""The web console: server-rendered pages for approvers, monitoring owners and auditors (an adapter: its routers
call the domains' services and hold no rule of their own)."""
