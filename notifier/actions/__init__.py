"""Acting from the chat: buttons on firing messages and commands, from Telegram and Slack.

buttons.py   the buttons a message offers and the stored actions behind them; the lines that show an acknowledgement
             or a silence (pure)
service.py   what a press or a command does: who may, acknowledge, silence through Alertmanager, edit every copy
telegram.py  how presses and commands arrive from Telegram: long polling (one replica at a time) or its webhook
slack.py     Slack's signed interaction and command requests
"""
