"""The browser desk (`desk.py`): agents' desk and supervisors' board over the durable core,
server-rendered, live through server-sent events, with one shared refresh for every page."""
