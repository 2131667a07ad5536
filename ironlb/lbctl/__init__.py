"""``lbctl``: the admin's command line for ironlb address pools and announcements."""
