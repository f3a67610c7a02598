"""The web view at /ui: for the person on call, what fires and waits now, a group's timeline (why each message went
or did not), dead letters with Retry. Server-rendered, every asset in the package; login with hashed passwords, a
session cookie (HttpOnly, SameSite=Strict) and a CSRF token on every form."""
