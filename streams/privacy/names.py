"""Given names, for the name recognizer beside spaCy's (recognizers.find_names).

The small English spaCy model misses names it has not seen in context ("a portrait of Margaret
Thornbury holding ..."): a capitalised word from this list followed by one or two capitalised words
is taken for a person. The list spans many languages and leaves out given names that are common
words, months or places (May, Will, Grace, Jordan, Florence, Sydney), which would redact ordinary text.
"""

from __future__ import annotations

FIRST_NAMES = frozenset("""
Aaron Abdul Abigail Adam Adebayo Adriana Adrian Ahmed Aiden Aisha Akira Alan Albert Aleksandr Alessandro
Alex Alexander Alexandra Alice Alicia Alina Alisha Amanda Amara Amelia Amir Amit Ana Anastasia Anders Andrea
Andreas Andrew Andrzej Angela Angelica Anita Ann Anna Anne Antoine Anton Antonio Arjun Arnav Astrid Aurora
Ayesha Barbara Beatriz Ben Benjamin Bernard Bianca Bjorn Brian Bruno Camille Carla Carlos Carmen Caroline
Catherine Cecilia Charles Charlotte Chen Chidi Chiara Chloe Christian Christina Christine Christopher Claire
Clara Claudia Colin Connor Cristina Daniel Daniela Dariusz David Deborah Deepak Diana Diego Dimitri Dmitri
Dominik Dorothy Duc Edward Elena Eleanor Elif Elijah Elisa Elizabeth Ella Emily Emil Emma Emmanuel Enrique
Eric Erik Ethan Eva Evelyn Fatima Felipe Felix Fernando Fiona Francesca Francesco Francisco Franziska
Gabriel Gabriela Georg George Gerhard Giovanni Giulia Giuseppe Gregory Gustav Hana Hannah Hans Harald Harriet
Harry Helen Helena Henrik Henry Hiroshi Hugo Ibrahim Igor Ines Ingrid Irina Isaac Isabel Isabella Ivan Jakob
James Jamal Jan Jana Jane Jasmine Javier Jennifer Jessica Jin Joanna Johan Johannes John Jonas Jonathan Jorge
Jose José Joseph Joshua Juan Julia Julian Juliana Julie Julien Jun Karen Karim Karin Karl Katarzyna Kate
Katharina Katherine Kenji Kevin Kim Klaus Kofi Kwame Lars Laura Lauren Leila Lena Leon Leonardo Liam Lina
Linda Ling Lisa Liu Lorenzo Louis Louise Luca Lucas Lucia Luis Lukas Magdalena Maja Manuel Marco Margaret
Maria Mariam Marie Marina Mario Marta Martin Martina Mary Mateo Matteo Matthew Maximilian Mehmet Mei Melanie
Mia Michael Michelle Miguel Mikhail Min Mohammed Muhammad Nadia Naomi Natalia Natasha Nathan Nicholas Nicola
Nicole Nikolai Nina Noah Nora Oliver Olivia Olusegun Omar Oscar Pablo Patricia Patrick Paul Paula Pavel
Pedro Peter Petra Philip Pierre Pietro Priya Rachel Rafael Rahul Rajesh Ramon Rebecca Richard Rita Robert
Roberto Rosa Ryan Sakura Samuel Sandra Sara Sarah Sebastian Sergei Sergio Shreya Simon Simone Sofia Sophia
Sophie Stefan Stefanie Stephanie Steven Susan Svetlana Sven Takeshi Tanaka Tatiana Teresa Thomas Tobias
Tomas Tomasz Valentina Vanessa Vera Veronica Viktor Vincent Vladimir Walter Wei Wilhelm William Xavier Yasmin
Yuki Yusuf Zainab Zara Zhang Zoe Oluwaseun Ngozi Tariq Farah Hamza Layla Yara Soren Søren Jiri Jiří Ewa
Agnieszka Piotr Krzysztof Bogdan Olga Yulia Oksana Taras Mehdi Reza Parisa Arash Nguyen Thi Minh Anh Linh
Sunita Anil Vikram Kavya Ananya Rohan Siddharth Haruto Yui Sora Minjun Seo Jisoo Hyun Ji Wen Xin Hao
""".split())
