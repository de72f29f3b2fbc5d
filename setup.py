from setuptools import setup

setup(packages=["portofcall_xmpp", "twisted.plugins"])
